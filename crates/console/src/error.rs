//! What can stop the console: its accounts, its address, its database. It must not hold a
//! password or a session token in a message.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Accounts(#[from] crate::accounts::AccountsError),
    #[error(
        "console.listen: cannot listen on {addr}: {source} (is another console running? change `[console] listen`)"
    )]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Tls(String),
    #[error("the console stopped serving: {0}")]
    Serve(std::io::Error),
}
