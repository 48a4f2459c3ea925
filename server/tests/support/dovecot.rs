//! A real IMAP server for the bounce-mailbox tests: Debian's Dovecot
//! (`dovecot-imapd`, which `.ci/install-tools` installs), started by the
//! test with a configuration generated in a temporary folder, listening on
//! a free loopback port, one user (`bounces`) in a passwd-file with a plain
//! password, Maildir storage in the same folder. Plain-text logins are
//! allowed because it listens on 127.0.0.1 only. Run as the current user;
//! as root (containers) Dovecot's own `dovenull`/`dovecot` users run its
//! login and mail processes, as Dovecot refuses root for them. Stopped,
//! and its folder removed, when the value is dropped. No system service is
//! touched.
//!
//! [`Dovecot::start_tls`] also serves IMAPS on a second port and offers
//! STARTTLS on the first, with a certificate the test made
//! ([`TestCa`]: a CA of its own, with `openssl`, and a server certificate
//! it signed for 127.0.0.1 and localhost).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

pub struct Dovecot {
    child: Child,
    /// Plain IMAP (STARTTLS offered when TLS is on): the test's own helpers use it.
    pub port: u16,
    /// IMAPS, with [`Dovecot::start_tls`].
    pub tls_port: Option<u16>,
    pub user: &'static str,
    pub password: &'static str,
    dir: tempfile::TempDir,
}

/// The Dovecot binary (in /usr/sbin, often not on a user's PATH).
fn binary() -> PathBuf {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from("dovecot"))
}

/// A user's uid and gid, from /etc/passwd.
fn account(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name).then(|| (fields[2].parse().ok(), fields[3].parse().ok())).and_then(|(u, g)| Some((u?, g?)))
    })
}

fn current_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    // A file we just made is ours.
    let probe = tempfile::NamedTempFile::new().unwrap();
    let meta = probe.as_file().metadata().unwrap();
    (meta.uid(), meta.gid())
}

fn name_of(uid: u32, file: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// A certificate authority made for one test with `openssl`, and a server
/// certificate it signed (EC P-256, for 127.0.0.1 and localhost).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().expect("openssl runs (Debian's openssl)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let (ca_key, ca_cert, key, csr, cert, ext) = (at("ca.key"), at("ca.pem"), at("server.key"), at("server.csr"), at("server.pem"), at("server.ext"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca_cert,
            "-days",
            "2",
            "-subj",
            "/CN=Waymark test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&["x509", "-req", "-in", &csr, "-CA", &ca_cert, "-CAkey", &ca_key, "-CAcreateserial", "-out", &cert, "-days", "2", "-extfile", &ext]);
        {
            // Dovecot's master reads them as root, or as us.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        TestCa { dir }
    }

    /// The CA's certificate (PEM): what a client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir.path().join("server.pem"), self.dir.path().join("server.key"))
    }
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::launch(None)
    }

    /// IMAPS on `tls_port`, STARTTLS on `port`, with `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> Dovecot {
        Dovecot::launch(Some(ca.server()))
    }

    fn launch(tls: Option<(PathBuf, PathBuf)>) -> Dovecot {
        let binary = binary();
        let installed = Command::new(&binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        assert!(installed, "these tests need Dovecot's IMAP server: `.ci/install-tools` installs Debian's dovecot-imapd (apt-get install dovecot-imapd)");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (uid, gid) = current_ids();
        // Root runs the master only; Dovecot's own users run the rest.
        let (login_user, internal_user, internal_group, mail_ids) = if uid == 0 {
            let mail = account("dovecot").expect("the dovecot user (made by dovecot-core)");
            ("dovenull".to_owned(), "dovecot".to_owned(), "dovecot".to_owned(), mail)
        } else {
            let user = name_of(uid, "/etc/passwd");
            let group = name_of(gid, "/etc/group");
            (user.clone(), user, group, (uid, gid))
        };
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
            if uid == 0 {
                for sub in ["mail", "home"] {
                    std::os::unix::fs::chown(root.join(sub), Some(mail_ids.0), Some(mail_ids.1)).unwrap();
                }
            }
        }
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port = free();
        let tls_port = tls.as_ref().map(|_| free());
        let ssl = match &tls {
            Some((cert, key)) => format!("ssl = yes\nssl_cert = <{}\nssl_key = <{}\n", cert.display(), key.display()),
            None => "ssl = no\n".to_owned(),
        };
        let user = "bounces";
        let password = "mailbox-secret";
        std::fs::write(root.join("passwd"), format!("{user}:{{PLAIN}}{password}::::::\n")).unwrap();
        let path = |p: &str| root.join(p).display().to_string();
        let config = format!(
            "base_dir = {run}\nstate_dir = {state}\nlog_path = {log}\nprotocols = imap\nlisten = 127.0.0.1\n{ssl}\
             disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             default_login_user = {login_user}\ndefault_internal_user = {internal_user}\ndefault_internal_group = {internal_group}\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\nmail_location = maildir:{mail}/%u\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {passwd}\n}}\n\
             userdb {{\n  driver = static\n  args = uid={muid} gid={mgid} home={home}/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n",
            run = path("run"),
            state = path("state"),
            log = path("dovecot.log"),
            mail = path("mail"),
            passwd = path("passwd"),
            home = path("home"),
            imaps = tls_port.unwrap_or(0),
            muid = mail_ids.0,
            mgid = mail_ids.1,
        );
        std::fs::write(root.join("dovecot.conf"), config).unwrap();
        let child = Command::new(&binary)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot starts");
        let dovecot = Dovecot { child, port, tls_port, user, password, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in std::iter::once(port).chain(tls_port) {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "Dovecot did not listen on {port}:\n{}", dovecot.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        dovecot
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap().expect("a greeting");
        client.login(self.user, self.password).await.map_err(|(err, _)| err).unwrap_or_else(|err| panic!("login: {err}\n{}", self.log()))
    }

    /// Delivers a message (RFC 5322 text) into `folder` over IMAP APPEND, unseen.
    pub async fn append(&self, folder: &str, message: &str) {
        let mut session = self.session().await;
        if folder != "INBOX" {
            let _ = session.create(folder).await;
        }
        session.append(folder, None, None, message.replace("\r\n", "\n").replace('\n', "\r\n")).await.unwrap_or_else(|err| panic!("append: {err}"));
        session.logout().await.unwrap();
    }

    /// The UIDs in `folder` matching an IMAP search (`UNSEEN`, `ALL`).
    pub async fn search(&self, folder: &str, query: &str) -> Vec<u32> {
        let mut session = self.session().await;
        let _ = session.create(folder).await;
        session.select(folder).await.unwrap();
        let mut uids: Vec<u32> = session.uid_search(query).await.unwrap().into_iter().collect();
        uids.sort_unstable();
        session.logout().await.unwrap();
        uids
    }

    /// How many messages `folder` holds, seen or not.
    pub async fn count(&self, folder: &str) -> usize {
        self.search(folder, "ALL").await.len()
    }

    /// Marks every message in `folder` unseen again (to show a second
    /// poll does not handle them twice).
    pub async fn mark_all_unseen(&self, folder: &str) {
        let mut session = self.session().await;
        session.select(folder).await.unwrap();
        let _: Vec<_> = session.store("1:*", "-FLAGS.SILENT (\\Seen)").await.unwrap().try_collect().await.unwrap();
        session.logout().await.unwrap();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM to the master (our child) stops its processes with it.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
