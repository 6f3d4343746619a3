"""A real OpenLDAP ``slapd`` for the directory tests (tools/directory_server.py, the one copy the
screenshots use too), serving dc=example,dc=test with a second, read-only account, and the lookups
the tests make against it."""
from __future__ import annotations

from pathlib import Path

from tools.directory_server import DirectoryServer, DirectoryTree, make_certificates, missing_reason

TREE = DirectoryTree(suffix="dc=example,dc=test", organization="POP3 Service tests", root_pw="root-secret-pw",
                     service_pw="service-bind-pw-71")
SUFFIX, ROOT_DN, ROOT_PW = TREE.suffix, TREE.root_dn, TREE.root_pw
SERVICE_DN, SERVICE_PW = TREE.service_dn, TREE.service_pw
READER_DN = f"cn=reader,{TREE.services}"
READER_PW = "reader-bind-pw-72"
PEOPLE = TREE.people

__all__ = ["PEOPLE", "READER_DN", "READER_PW", "ROOT_DN", "ROOT_PW", "SERVICE_DN", "SERVICE_PW", "SUFFIX", "Slapd",
           "make_certificates", "missing_reason"]


class Slapd(DirectoryServer):
    """One slapd process on a free port; ``url`` is ldap://127.0.0.1:PORT (StartTLS available)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, TREE, preferred_port=0)

    def start(self) -> Slapd:
        super().start()
        self.ldapadd(f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                     f"cn: reader\nuserPassword: {READER_PW}\n")
        return self

    def add_person(self, address: str, password: str, *, uid: str | None = None) -> str:
        dn = f"uid={uid or address},{PEOPLE}"
        name = address.split("@")[0]
        self.ldapadd(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid or address}\ncn: {address}\nsn: {name}\n"
                     f"mail: {address}\nuserPassword: {password}\n")
        return dn

    def exists(self, dn: str) -> bool:
        out = self.ldap("ldapsearch", "-b", dn, "-s", "base", "dn")
        return out.returncode == 0 and f"dn: {dn}" in out.stdout

    def attribute(self, dn: str, attr: str) -> list[str]:
        out = self.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s", "base", attr)
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
