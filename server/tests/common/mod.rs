//! What the server's integration tests share.

use interlock::{Config, Handle};
use interlock_server::{Server, ServerConfig};

/// An engine, and a server of it on a free loopback port.
pub fn serve() -> (Handle, Server) {
    let engine = Handle::new(Config::default()).unwrap();
    let config = ServerConfig {
        bind: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(engine.clone(), config).unwrap();
    (engine, server)
}
