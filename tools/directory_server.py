"""A real OpenLDAP ``slapd``: its own config, database, port and certificate under a temporary directory,
in the foreground (``-d 0``) on 127.0.0.1 with StartTLS, seeded with ``ldapadd``. It never touches the
system's slapd (Debian's package may run one on 389; we do not use it). The setup wizard's directory
pictures use it with Contoso's tree; the directory tests (tests/slapd.py) with theirs."""
from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.real_service import free_port, wait_until

SCHEMA, MODULES = Path("/etc/ldap/schema"), Path("/usr/lib/ldap")
LDAP_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class DirectoryTree:
    """What one slapd serves: a suffix with ``ou=people`` and an OU of service accounts, the service's
    bind account in it, and the root account that seeds it."""

    suffix: str
    organization: str
    root_pw: str
    service_pw: str
    services_ou: str = "services"   # its spelling shows in the bind DN

    @property
    def root_dn(self) -> str:
        return f"cn=admin,{self.suffix}"

    @property
    def services(self) -> str:
        return f"ou={self.services_ou},{self.suffix}"

    @property
    def service_dn(self) -> str:
        return f"cn=pop3svc,{self.services}"

    @property
    def people(self) -> str:
        return f"ou=people,{self.suffix}"

    def seed(self) -> str:
        """The LDIF that creates the tree."""
        dc = self.suffix.split(",", 1)[0].partition("=")[2]
        return (f"dn: {self.suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\n"
                f"o: {self.organization}\n\n"
                f"dn: {self.people}\nobjectClass: organizationalUnit\nou: people\n\n"
                f"dn: {self.services}\nobjectClass: organizationalUnit\nou: {self.services_ou}\n\n"
                f"dn: {self.service_dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                f"cn: pop3svc\nuserPassword: {self.service_pw}\n")


CONTOSO = DirectoryTree(suffix="dc=contoso,dc=com", organization="Contoso", root_pw="directory-root-pw",
                        service_pw="Bind-Account-Secret-9", services_ou="Services")
SUFFIX, SERVICE_DN, SERVICE_PW = CONTOSO.suffix, CONTOSO.service_dn, CONTOSO.service_pw

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


def missing_reason() -> str | None:
    """Why slapd cannot run here, or None."""
    for tool in ("slapd", "ldapadd"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install slapd ldap-utils)"
    if not (SCHEMA / "inetorgperson.schema").exists():
        return f"the OpenLDAP schema files are missing ({SCHEMA})"
    return None


def make_certificates(directory: Path, ca_name: str = "pop3-service test CA") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, written into ``directory``:
    (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
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


class DirectoryServer:
    """One slapd serving ``tree``; ``url`` is ldap://127.0.0.1:PORT (StartTLS with a certificate from ``ca``),
    on ``preferred_port`` when it is free."""

    def __init__(self, directory: Path, tree: DirectoryTree = CONTOSO, *, preferred_port: int = 10389) -> None:
        self.dir = Path(directory)
        self.tree = tree
        self.port = free_port(preferred_port)
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ca = self.dir / "ca.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_certificates(self.dir, f"{self.tree.organization} directory CA")
        conf = self.dir / "slapd.conf"
        conf.write_text(CONFIG.format(schema=SCHEMA, modules=MODULES, dir=self.dir, ca=self.ca, cert=cert, key=key,
                                      suffix=self.tree.suffix, root_dn=self.tree.root_dn, root_pw=self.tree.root_pw,
                                      service_dn=self.tree.service_dn, people=self.tree.people))
        with open(self.dir / "slapd.log", "wb") as log:   # slapd keeps its own copy of the descriptor
            self.proc = subprocess.Popen(["slapd", "-f", str(conf), "-h", f"{self.url}/", "-d", "0"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._accepting, f"slapd on port {self.port} (log: {self.dir / 'slapd.log'})")
        self.ldapadd(self.tree.seed())
        return self

    def _accepting(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"slapd exited with {self.proc.returncode}: "
                               f"{(self.dir / 'slapd.log').read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def ldap(self, tool: str, *args: str, ldif: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run an OpenLDAP client (ldapadd, ldapsearch, ...) against this server as the root DN, over
        StartTLS (-ZZ) trusting ``ca``."""
        return subprocess.run([tool, "-x", "-ZZ", "-H", self.url, "-D", self.tree.root_dn, "-w", self.tree.root_pw,
                               *args], input=ldif, text=True, capture_output=True,
                              env={"LDAPTLS_CACERT": str(self.ca), "PATH": LDAP_PATH})

    def ldapadd(self, ldif: str) -> None:
        """Add entries with the real ldapadd; CalledProcessError when it refuses."""
        self.ldap("ldapadd", ldif=ldif).check_returncode()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
