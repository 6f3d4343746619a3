"""A real OpenLDAP ``slapd`` for the setup wizard's directory pictures: its own config, database, port and
certificate under a temporary directory, on 127.0.0.1 with StartTLS, seeded with ``ldapadd``. It never
touches a slapd of the system. (tests/slapd.py is the richer one the directory tests use.)"""
from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.real_service import free_port, wait_until

SUFFIX = "dc=contoso,dc=com"
ROOT_DN, ROOT_PW = f"cn=admin,{SUFFIX}", "directory-root-pw"
SERVICE_DN, SERVICE_PW = f"cn=pop3svc,ou=Services,{SUFFIX}", "Bind-Account-Secret-9"
SCHEMA, MODULES = Path("/etc/ldap/schema"), Path("/usr/lib/ldap")

CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
modulepath {modules}
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/db
access to * by * read
"""

SEED = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
dc: contoso
o: Contoso

dn: ou=Services,{suffix}
objectClass: organizationalUnit
ou: Services

dn: {service_dn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: pop3svc
userPassword: {service_pw}
"""


def missing_reason() -> str:
    """'' when slapd can run here, else why not."""
    for tool in ("slapd", "ldapadd"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install slapd ldap-utils)"
    if not (SCHEMA / "inetorgperson.schema").exists():
        return f"the OpenLDAP schema files are missing ({SCHEMA})"
    return ""


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contoso directory CA")])
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
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
    """One slapd; ``url`` is ldap://127.0.0.1:PORT (StartTLS with a certificate from ``ca``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.port = free_port(10389)
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ca = self.dir / "ca.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DirectoryServer:
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = _certificates(self.dir)
        conf = self.dir / "slapd.conf"
        conf.write_text(CONFIG.format(schema=SCHEMA, modules=MODULES, dir=self.dir, ca=self.ca, cert=cert, key=key,
                                      suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW))
        with open(self.dir / "slapd.log", "wb") as log:
            self.proc = subprocess.Popen(["slapd", "-f", str(conf), "-h", f"{self.url}/", "-d", "0"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._accepting, f"slapd on port {self.port}")
        subprocess.run(["ldapadd", "-x", "-ZZ", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW],
                       input=SEED.format(suffix=SUFFIX, service_dn=SERVICE_DN, service_pw=SERVICE_PW), text=True,
                       check=True, capture_output=True,
                       env={"LDAPTLS_CACERT": str(self.ca), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
