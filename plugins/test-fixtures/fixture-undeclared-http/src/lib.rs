//! Test fixture: GETs the `url` argument, but the manifest declares no outbound destinations, so
//! the host must deny it. Fails with the error's text.
use octo_plugin_sdk::http;
use octo_plugin_sdk::prelude::*;

struct UndeclaredHttp;

impl Step for UndeclaredHttp {
    fn describe() -> Description {
        Description::new("HTTP GET (undeclared)").param(Param::new("url").required())
    }

    fn run(args: Args) -> Result {
        let response = http::get(args.required("url")?).send()?;
        info!("GET returned {}", response.status());
        Ok(())
    }
}

step!(
    UndeclaredHttp,
    description = "GETs the url parameter without declaring it"
);
