//! A private OpenLDAP `slapd` on loopback, with StartTLS and LDAPS from a
//! throwaway CA, the memberof overlay, and a small directory:
//!
//! - `uid=alice` (password `alice-pw`) in groups `devs` and `ops`
//! - `uid=bob` (password `bob-pw`) in `devs`
//! - `cn=broker,ou=services` (password `broker-pw`), the service account that
//!   may read the directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::TestCa;

/// The directory's suffix.
pub const BASE: &str = "dc=corp,dc=example";
/// The service account's DN.
pub const BROKER_DN: &str = "cn=broker,ou=services,dc=corp,dc=example";
/// The service account's password.
pub const BROKER_PASSWORD: &str = "broker-pw";
const ROOT_DN: &str = "cn=admin,dc=corp,dc=example";
const ROOT_PASSWORD: &str = "admin-pw";

/// A running slapd.
pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `ldap://127.0.0.1:PORT` (StartTLS available).
    pub ldap_url: String,
    /// `ldaps://127.0.0.1:PORT`.
    pub ldaps_url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn hash(password: &str) -> String {
    let output =
        Command::new("slappasswd").args(["-s", password]).output().expect("slappasswd (apt-get install slapd)");
    String::from_utf8(output.stdout).expect("utf-8").trim().to_string()
}

impl Slapd {
    /// Start slapd and seed the directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("slapd dir");
        let path = dir.path();
        let ca = TestCa::new("slapd test CA");
        let server = ca.server();
        std::fs::write(path.join("ca.crt"), &ca.cert_pem).expect("ca");
        std::fs::write(path.join("server.crt"), &server.cert_pem).expect("cert");
        std::fs::write(path.join("server.key"), &server.key_pem).expect("key");
        std::fs::create_dir(path.join("db")).expect("db dir");
        let p = |name: &str| path.join(name).display().to_string();
        let config = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
pidfile {pid}
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 104857600
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {rootpw}
directory {db}
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="{BROKER_DN}" read by self read by * none
database monitor
access to * by dn.exact="{ROOT_DN}" read by * none
"#,
            pid = p("slapd.pid"),
            ca = p("ca.crt"),
            cert = p("server.crt"),
            key = p("server.key"),
            rootpw = hash(ROOT_PASSWORD),
            db = p("db"),
        );
        std::fs::write(path.join("slapd.conf"), config).expect("slapd.conf");
        let check =
            Command::new("slaptest").args(["-u", "-f"]).arg(path.join("slapd.conf")).output().expect("slaptest");
        assert!(check.status.success(), "slaptest: {}", String::from_utf8_lossy(&check.stderr));
        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let ldap_url = format!("ldap://127.0.0.1:{ldap_port}");
        let ldaps_url = format!("ldaps://127.0.0.1:{ldaps_port}");
        let mut slapd = Self { child: None, dir, ldap_url, ldaps_url };
        slapd.launch();
        slapd.add(&seed());
        slapd
    }

    /// Start (or restart) the daemon on the same ports and data.
    pub fn launch(&mut self) {
        let child = Command::new("/usr/sbin/slapd")
            .args(["-d", "0", "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/ {}/", self.ldap_url, self.ldaps_url))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting slapd");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let probe = self.tool("ldapwhoami").args(["-x", "-H", &self.ldap_url]).output().expect("ldapwhoami");
            if probe.status.success() {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "slapd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the daemon (the data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the CA certificate is.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(name);
        command.env("LDAPTLS_CACERT", self.ca_file());
        command
    }

    fn apply(&self, tool: &str, ldif: &str) {
        let mut child = self
            .tool(tool)
            .args(["-x", "-H", &self.ldap_url, "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect(tool);
        child.stdin.take().expect("stdin").write_all(ldif.as_bytes()).expect("ldif");
        let output = child.wait_with_output().expect(tool);
        assert!(output.status.success(), "{tool}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// `ldapadd` as the root DN (through slapd, so overlays apply).
    pub fn add(&self, ldif: &str) {
        self.apply("ldapadd", ldif);
    }

    /// `ldapmodify` as the root DN.
    pub fn modify(&self, ldif: &str) {
        self.apply("ldapmodify", ldif);
    }

    /// How many operations of `kind` (`Bind`, `Search`...) slapd has
    /// completed, by its own count (the monitor backend). Reading it is a
    /// search itself.
    pub fn operations(&self, kind: &str) -> u64 {
        let output = self
            .tool("ldapsearch")
            .args(["-x", "-LLL", "-H", &self.ldap_url, "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-s", "base", "-b"])
            .arg(format!("cn={kind},cn=Operations,cn=Monitor"))
            .arg("monitorOpCompleted")
            .output()
            .expect("ldapsearch");
        assert!(output.status.success(), "ldapsearch: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("monitorOpCompleted: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no monitorOpCompleted in {text}"))
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn seed() -> String {
    let person = |uid: &str, password: &str| {
        super::audit::secret(password);
        format!(
            "dn: uid={uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {}\n\n",
            hash(password)
        )
    };
    format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: corp\ndc: corp\n\n\
         dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {BROKER_DN}\nobjectClass: person\ncn: broker\nsn: broker\nuserPassword: {}\n\n\
         {}{}\
         dn: cn=devs,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: devs\nmember: uid=alice,ou=people,{BASE}\nmember: uid=bob,ou=people,{BASE}\n\n\
         dn: cn=ops,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: ops\nmember: uid=alice,ou=people,{BASE}\n\n",
        hash(BROKER_PASSWORD),
        person("alice", "alice-pw"),
        person("bob", "bob-pw"),
    )
}
