//! The feed client's connections through the web request proxy: the server's package and steps
//! feeds, and a tentacle's direct package downloads, open their streams here.

use std::sync::Arc;

use octo_comms::proxy::{DEFAULT_PROXY_TIMEOUT, connect_via_proxy};
use octo_feed::client::{BoxFuture, BoxedIo, DirectConnector};

use crate::WebProxy;

/// A [`octo_feed::Connector`] that tunnels each connection with `CONNECT` through `proxy` (the
/// system proxy's rules when it is the system one: `HTTP_PROXY` for port 80, else `HTTPS_PROXY`,
/// `NO_PROXY` honoured), or connects directly when there is none.
pub fn feed_connector(proxy: Option<WebProxy>) -> Arc<dyn octo_feed::Connector> {
    match proxy {
        Some(proxy) => Arc::new(ProxyConnector { proxy }),
        None => Arc::new(DirectConnector),
    }
}

struct ProxyConnector {
    proxy: WebProxy,
}

impl octo_feed::Connector for ProxyConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<BoxedIo>> {
        Box::pin(async move {
            let chosen = self
                .proxy
                .proxy_for(port != 80, host)
                .map_err(std::io::Error::other)?;
            match chosen {
                Some(p) => {
                    let stream = connect_via_proxy(&p, host, port, DEFAULT_PROXY_TIMEOUT)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok(Box::new(stream) as BoxedIo)
                }
                None => DirectConnector.connect(host, port).await,
            }
        })
    }
}
