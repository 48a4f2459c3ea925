//! FTP upload (suppaftp, plain FTP, passive mode): the contact as JSON or
//! CSV stored at the step's path, missing folders created. suppaftp is
//! blocking, so each upload runs on a blocking thread with the timeout set
//! on its socket.

use std::io::Cursor;
use std::net::ToSocketAddrs;
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::FtpStream;

use super::settings::{Ftp, Secret};
use crate::runtime::outbox::Failure;

pub async fn upload(ftp: Ftp, password: Option<Secret>, path: String, body: Vec<u8>) -> Result<(), Failure> {
    let task = tokio::task::spawn_blocking(move || store(&ftp, password.as_ref(), &path, body));
    task.await.map_err(|err| Failure::permanent(format!("the FTP upload crashed: {err}")))?
}

fn store(ftp: &Ftp, password: Option<&Secret>, path: &str, body: Vec<u8>) -> Result<(), Failure> {
    let server = format!("{}:{}", ftp.host, ftp.port);
    let path = path.trim_start_matches('/');
    if path.is_empty() || path.ends_with('/') || path.split('/').any(|part| part == "..") {
        return Err(Failure::permanent(format!("“{path}” is not a file path to upload to")));
    }
    let timeout = Duration::from_secs(ftp.timeout_secs);
    let addr = server
        .to_socket_addrs()
        .map_err(|err| Failure::transient(format!("the FTP server {server} cannot be found: {err}")))?
        .next()
        .ok_or_else(|| Failure::transient(format!("the FTP server {server} has no address")))?;
    let unreachable = |err: suppaftp::FtpError| Failure::transient(format!("could not reach the FTP server {server}: {err}"));
    let mut stream = FtpStream::connect_timeout(addr, timeout).map_err(unreachable)?;
    let _ = stream.get_ref().set_read_timeout(Some(timeout));
    let _ = stream.get_ref().set_write_timeout(Some(timeout));
    let password = password.map(Secret::expose).unwrap_or_default();
    stream
        .login(ftp.username.as_str(), password)
        .map_err(|err| Failure::permanent(format!("the FTP server {server} refused the login: {err}")))?;
    let refused = |err: suppaftp::FtpError| Failure::permanent(format!("the FTP server {server} refused to store {path}: {err}"));
    stream.transfer_type(FileType::Binary).map_err(refused)?;
    let folders: Vec<&str> = path.split('/').collect();
    for depth in 1..folders.len() {
        // Already there is fine: only the STOR below decides.
        let _ = stream.mkdir(folders[..depth].join("/"));
    }
    stream.put_file(path, &mut Cursor::new(body)).map_err(refused)?;
    let _ = stream.quit();
    Ok(())
}
