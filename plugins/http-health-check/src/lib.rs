//! http-health-check: the built-in step that GETs a URL until it returns the expected status or
//! the timeout passes. Each attempt is logged. A request the host denies fails the step at once:
//! retrying cannot help.

use std::time::{Duration, Instant};

use octo_plugin_sdk::http;
use octo_plugin_sdk::prelude::*;

struct HealthCheck;

impl Step for HealthCheck {
    fn describe() -> Description {
        Description::new("HTTP health check")
            .param(
                Param::new("url")
                    .label("URL")
                    .help("The http:// or https:// address to GET.")
                    .required(),
            )
            .param(
                Param::new("expectedStatus")
                    .label("Expected status")
                    .help("The HTTP status code that means healthy.")
                    .default(200),
            )
            .param(
                Param::new("timeoutSeconds")
                    .label("Timeout (seconds)")
                    .help("Give up after this many seconds.")
                    .default(60),
            )
            .param(
                Param::new("intervalSeconds")
                    .label("Interval (seconds)")
                    .help("Wait this long between attempts.")
                    .default(2),
            )
    }

    fn run(args: Args) -> Result {
        let url = args.required("url")?.trim();
        let expected: u16 = args.get_or("expectedStatus", 200)?;
        let timeout: u64 = args.get_or("timeoutSeconds", 60)?;
        let interval: u64 = args.get_or("intervalSeconds", 2)?;
        if !(100..=599).contains(&expected) {
            bail!(
                "parameter 'expectedStatus' must be an HTTP status code from 100 to 599, but is {expected}"
            );
        }

        info!("Checking {url} until it returns {expected} (timeout {timeout}s, every {interval}s)");
        let start = Instant::now();
        let deadline = start + Duration::from_secs(timeout);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Every attempt may use the time that is left, but at least a second.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let last = match http::get(url).timeout(left).ignore_body().send() {
                Ok(response) if response.status() == expected => {
                    info!(
                        "Attempt {attempt}: {url} returned {expected} after {:.1}s",
                        start.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Ok(response) => {
                    info!(
                        "Attempt {attempt}: {url} returned {} (expecting {expected})",
                        response.status()
                    );
                    format!("it returned {}", response.status())
                }
                Err(e) if e.is_permanent() => bail!("cannot check {url}: {e}"),
                Err(e) => {
                    warn!("Attempt {attempt}: {e}");
                    e.to_string()
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{url} did not return {expected} within {timeout} seconds \
                     ({attempt} attempts; last: {last})"
                );
            }
            std::thread::sleep(Duration::from_secs(interval).min(left));
        }
    }
}

step!(
    HealthCheck,
    description = "GET a URL until it returns the expected status",
    outbound = ["{{url}}"],
);
