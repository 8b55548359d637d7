//! The `CONNECT` exchange as plain values: the request bytes, and parsing of the proxy's reply
//! head however it was split across reads.

use super::config::authority;

/// Longest reply head accepted before the reply is declared malformed.
pub const MAX_REPLY_HEAD: usize = 16 * 1024;

/// The status line of a complete reply head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Length of the head including the final empty line; bytes after it belong to the tunnel.
    pub head_len: usize,
}

/// Builds the `CONNECT` request for `target_host:target_port`.
pub fn connect_request(
    target_host: &str,
    target_port: u16,
    authorization: Option<&str>,
) -> Result<Vec<u8>, String> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#');
    let bare = target_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(target_host);
    if bare.is_empty() || bare.chars().any(bad) {
        return Err(format!(
            "{target_host:?} is not a valid host name or address"
        ));
    }
    let target = authority(bare, target_port);
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: Octo\r\nProxy-Connection: Keep-Alive\r\n"
    );
    if let Some(value) = authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    Ok(request.into_bytes())
}

/// Parses the reply head from what has been read so far: `Ok(None)` if more bytes are needed.
pub fn parse_reply_head(buf: &[u8]) -> Result<Option<ReplyHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => Ok(Some(ReplyHead {
            status: response.code.unwrap_or(0),
            reason: response.reason.unwrap_or("").to_owned(),
            head_len,
        })),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REPLY_HEAD => Err(format!(
            "the reply head is longer than {MAX_REPLY_HEAD} bytes"
        )),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("not an HTTP reply ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_target_host_and_optional_authorization() {
        let r = String::from_utf8(connect_request("tentacle.local", 10933, None).unwrap()).unwrap();
        assert!(r.starts_with("CONNECT tentacle.local:10933 HTTP/1.1\r\n"));
        assert!(r.contains("\r\nHost: tentacle.local:10933\r\n"));
        assert!(!r.contains("Proxy-Authorization"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = String::from_utf8(connect_request("::1", 1, Some("Basic eA==")).unwrap()).unwrap();
        assert!(r.starts_with("CONNECT [::1]:1 HTTP/1.1\r\n"));
        assert!(r.contains("\r\nProxy-Authorization: Basic eA==\r\n"));
        assert!(connect_request("evil\r\nX: y", 1, None).is_err());
        assert!(connect_request("", 1, None).is_err());
    }

    #[test]
    fn reply_parsed_whatever_the_split() {
        let reply = b"HTTP/1.1 200 Connection established\r\nVia: squid\r\n\r\nTUNNEL";
        for cut in 0..reply.len() - 6 {
            assert_eq!(parse_reply_head(&reply[..cut]).unwrap(), None, "cut {cut}");
        }
        let head = parse_reply_head(reply).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.reason, "Connection established");
        assert_eq!(&reply[head.head_len..], b"TUNNEL");
        let head = parse_reply_head(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 407);
    }

    #[test]
    fn malformed_replies() {
        assert!(parse_reply_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        let long = [
            b"HTTP/1.1 200 OK\r\n".as_slice(),
            &vec![b'a'; MAX_REPLY_HEAD],
        ]
        .concat();
        assert!(parse_reply_head(&long).is_err());
    }
}
