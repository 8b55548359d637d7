// Shared by the vendor plugins (update-check, telemetry, experiences, dynamic-extensions), which
// `include!` it: each crate generates its own world's bindings in `crate::bindings`, and this uses their
// `wasi:http` part. A minimal blocking client: one request, the whole body, no redirects.
//
// Also `octo_manifest!`, which embeds the manifest JSON in the `octo:manifest` custom section.

#[allow(dead_code)]
mod vendor_http {
    use crate::bindings::wasi::http::outgoing_handler;
    use crate::bindings::wasi::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use crate::bindings::wasi::io::streams::StreamError;

    /// Responses larger than this are refused.
    const MAX_BODY: usize = 4 << 20;

    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, Vec<u8>)>,
        pub body: Vec<u8>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<String> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// Err with the status and the start of the body unless 2xx.
        pub fn success(self) -> Result<Self, String> {
            if (200..300).contains(&self.status) {
                Ok(self)
            } else {
                let mut text = self.text();
                text.truncate(200);
                Err(format!("the endpoint answered HTTP {}: {}", self.status, text.trim()))
            }
        }
    }

    /// Percent-encodes a query value.
    pub fn encode(value: &str) -> String {
        let mut out = String::new();
        for b in value.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// `url` plus `?k=v&...` (or `&k=v` when it already has a query).
    pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
        let mut url = url.to_string();
        for (i, (k, v)) in pairs.iter().enumerate() {
            let sep = if i == 0 && !url.contains('?') { '?' } else { '&' };
            url.push(sep);
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    fn describe(e: &ErrorCode, authority: &str) -> String {
        match e {
            ErrorCode::HttpRequestDenied => {
                format!("the request to {authority} was denied by the host's outbound policy")
            }
            other => format!("the request to {authority} failed: {other:?}"),
        }
    }

    pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        request("GET", url, headers, &[])
    }

    pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
        request("POST", url, headers, body)
    }

    pub fn request(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url} is not an absolute URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("unsupported URL scheme {other:?} in the endpoint")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let fields = Fields::new();
        for (name, value) in headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| format!("header {name}: {e:?}"))?;
        }
        if !body.is_empty() || method == "POST" {
            fields
                .append("content-length", body.len().to_string().as_bytes())
                .map_err(|e| format!("content-length: {e:?}"))?;
        }
        let req = OutgoingRequest::new(fields);
        let m = match method {
            "POST" => Method::Post,
            _ => Method::Get,
        };
        req.set_method(&m).map_err(|()| "the method was refused".to_string())?;
        req.set_scheme(Some(&scheme))
            .map_err(|()| "the scheme was refused".to_string())?;
        req.set_authority(Some(authority))
            .map_err(|()| format!("{authority} is not a valid host"))?;
        req.set_path_with_query(Some(&path))
            .map_err(|()| "the path is not valid".to_string())?;
        let out_body = req
            .body()
            .map_err(|()| "the request body was taken".to_string())?;
        let future = outgoing_handler::handle(req, None).map_err(|e| describe(&e, authority))?;
        {
            let stream = out_body
                .write()
                .map_err(|()| "cannot write the request body".to_string())?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| format!("sending the request body: {e:?}"))?;
            }
        }
        OutgoingBody::finish(out_body, None).map_err(|e| describe(&e, authority))?;
        let response = loop {
            match future.get() {
                Some(r) => {
                    break r
                        .map_err(|()| "the response was already taken".to_string())?
                        .map_err(|e| describe(&e, authority))?;
                }
                None => future.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response
            .consume()
            .map_err(|()| "the response body was taken".to_string())?;
        let mut data = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| "cannot read the response body".to_string())?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => {
                        data.extend_from_slice(&chunk);
                        if data.len() > MAX_BODY {
                            return Err(format!("the response from {authority} is too large"));
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(format!(
                            "reading the response from {authority}: {}",
                            e.to_debug_string()
                        ));
                    }
                }
            }
        }
        let _ = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body: data,
        })
    }
}

/// Embeds the manifest (a JSON string literal) in the `octo:manifest` custom section.
macro_rules! octo_manifest {
    ($json:expr) => {
        const __OCTO_MANIFEST_JSON: &str = $json;
        #[used]
        #[cfg_attr(target_family = "wasm", unsafe(link_section = "octo:manifest"))]
        static __OCTO_MANIFEST_SECTION: [u8; __OCTO_MANIFEST_JSON.len()] = {
            let bytes = __OCTO_MANIFEST_JSON.as_bytes();
            let mut out = [0u8; __OCTO_MANIFEST_JSON.len()];
            let mut i = 0;
            while i < bytes.len() {
                out[i] = bytes[i];
                i += 1;
            }
            out
        };
    };
}
