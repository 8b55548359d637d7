//! Passwords in URLs, masked for display.

/// `scheme://user:********@host…`: the password (between the user's `:` and the last `@` of the
/// authority) replaced; a `password=` query parameter too.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:********{}", &userinfo[..colon], &authority[at..]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.find("password=") {
        Some(p) => {
            let end = tail[p..].find('&').map(|e| p + e).unwrap_or(tail.len());
            format!("{}password=********{}", &tail[..p], &tail[end..])
        }
        None => tail.to_string(),
    };
    format!("{}://{authority}{tail}", &url[..scheme_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo_and_query_passwords() {
        assert_eq!(
            mask_url_password("postgres://u:p@h:1/d"),
            "postgres://u:********@h:1/d"
        );
        assert_eq!(
            mask_url_password("postgresql://u@h/d?sslmode=disable&password=x&a=b"),
            "postgresql://u@h/d?sslmode=disable&password=********&a=b"
        );
        assert_eq!(mask_url_password("postgres://h/d"), "postgres://h/d");
        assert_eq!(mask_url_password("not a url"), "not a url");
    }
}
