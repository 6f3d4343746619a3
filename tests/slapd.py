"""A real OpenLDAP ``slapd`` for the directory tests: its own config, database, port and certificate.

Started from a generated ``slapd.conf`` under a temporary directory, in the foreground
(``-d 0``) on 127.0.0.1 with a free port and StartTLS, seeded with ``ldapadd``. It never
touches the system's slapd (Debian's package may run one on 389; we do not use it).
"""
from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
from pathlib import Path

from tests.support import free_port, wait_for

SUFFIX = "dc=example,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret-pw"
SERVICE_DN = f"cn=pop3svc,ou=services,{SUFFIX}"
SERVICE_PW = "service-bind-pw-71"
READER_DN = f"cn=reader,ou=services,{SUFFIX}"
READER_PW = "reader-bind-pw-72"
PEOPLE = f"ou=people,{SUFFIX}"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")


def missing_reason() -> str | None:
    """Why the directory tests cannot run here, or None."""
    for tool in ("slapd", "ldapadd"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install slapd ldap-utils)"
    if not (SCHEMA / "inetorgperson.schema").exists():
        return "the OpenLDAP schema files are missing (/etc/ldap/schema)"
    return None


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pop3-service test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
modulepath {modules}
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
password-hash {{SSHA}}

database mdb
maxsize 67108864
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/db
access to attrs=userPassword
    by dn.exact="{service_dn}" write
    by self write
    by anonymous auth
    by * none
access to dn.subtree="{people}"
    by dn.exact="{service_dn}" write
    by * read
access to *
    by * read
"""

SEED = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
dc: example
o: POP3 Service tests

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=services,{suffix}
objectClass: organizationalUnit
ou: services

dn: {service_dn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: pop3svc
userPassword: {service_pw}

dn: {reader_dn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {reader_pw}
"""


class Slapd:
    """One slapd process; ``url`` is ldap://127.0.0.1:PORT (StartTLS available)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.ca = self.dir / "ca.pem"

    def start(self) -> None:
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_certificates(self.dir)
        conf = self.dir / "slapd.conf"
        conf.write_text(CONFIG.format(schema=SCHEMA, modules=MODULES, dir=self.dir, ca=self.ca, cert=cert, key=key,
                                      suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW, service_dn=SERVICE_DN,
                                      people=PEOPLE))
        self._log = open(self.dir / "slapd.log", "wb")
        self.proc = subprocess.Popen(["slapd", "-f", str(conf), "-h", f"{self.url}/", "-d", "0"],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._accepting, timeout=30, what=f"slapd on port {self.port} (log: {self.dir / 'slapd.log'})")
        self.ldapadd(SEED.format(suffix=SUFFIX, service_dn=SERVICE_DN, service_pw=SERVICE_PW, reader_dn=READER_DN,
                                 reader_pw=READER_PW))

    def _accepting(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"slapd exited with {self.proc.returncode}: "
                                 f"{(self.dir / 'slapd.log').read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def ldapadd(self, ldif: str) -> None:
        """Add entries with the real ldapadd, over StartTLS (-ZZ), as the root DN."""
        subprocess.run(["ldapadd", "-x", "-ZZ", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW],
                       input=ldif, text=True, check=True, capture_output=True,
                       env={"LDAPTLS_CACERT": str(self.ca), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})

    def add_person(self, address: str, password: str, *, uid: str | None = None) -> str:
        dn = f"uid={uid or address},{PEOPLE}"
        name = address.split("@")[0]
        self.ldapadd(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid or address}\ncn: {address}\nsn: {name}\n"
                     f"mail: {address}\nuserPassword: {password}\n")
        return dn

    def exists(self, dn: str) -> bool:
        out = subprocess.run(["ldapsearch", "-x", "-ZZ", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-b", dn,
                              "-s", "base", "dn"], text=True, capture_output=True,
                             env={"LDAPTLS_CACERT": str(self.ca), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
        return out.returncode == 0 and f"dn: {dn}" in out.stdout

    def attribute(self, dn: str, attr: str) -> list[str]:
        out = subprocess.run(["ldapsearch", "-x", "-ZZ", "-LLL", "-o", "ldif-wrap=no", "-H", self.url, "-D", ROOT_DN,
                              "-w", ROOT_PW, "-b", dn, "-s", "base", attr], text=True, capture_output=True,
                             env={"LDAPTLS_CACERT": str(self.ca), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
        prefix = f"{attr}:"
        return [line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith(prefix)]

    def settings(self, **extra: object) -> dict[str, object]:
        """The ldap_* settings that point the service at this server (bind password in clear)."""
        values: dict[str, object] = {"ldap_urls": self.url, "ldap_type": "openldap", "ldap_starttls": True,
                                     "ldap_ca_file": str(self.ca), "ldap_base_dn": SUFFIX, "ldap_bind_dn": SERVICE_DN,
                                     "ldap_bind_password": SERVICE_PW, "ldap_user_container": PEOPLE,
                                     "ldap_timeout": 3}
        values.update(extra)
        return values

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
