//! Test fixture: GETs the `url` argument through the SDK's HTTP client. The manifest declares
//! `outbound = ["{{url}}"]`, so whether the request goes out is up to the host's outbound policy.
//! Fails with the error's text (e.g. "outbound request to https://x was denied by the host ...").
use octo_plugin_sdk::http;
use octo_plugin_sdk::prelude::*;

struct DeniedHttp;

impl Step for DeniedHttp {
    fn describe() -> Description {
        Description::new("HTTP GET (declared)").param(Param::new("url").required())
    }

    fn run(args: Args) -> Result {
        let response = http::get(args.required("url")?).send()?;
        info!("GET returned {}", response.status());
        Ok(())
    }
}

step!(
    DeniedHttp,
    description = "GETs the url parameter (declared outbound)",
    outbound = ["{{url}}"],
);
