"""ManageSieve on 4190 and Sieve filtering at LMTP delivery."""

from __future__ import annotations

from conftest import PASSWORD, Stack
from mailtools import ManageSieve, make_message

SCRIPT = """require ["fileinto"];
if header :contains "subject" "[invoice]" {
  fileinto "Archive";
}
"""


def test_sieve_script_uploaded_over_managesieve_files_mail(stack: Stack) -> None:
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "hana")
    sieve = ManageSieve(stack.host, stack.ports["managesieve"])
    assert '"STARTTLS"' in sieve.capabilities
    sieve.starttls()
    assert any(line.startswith('"SIEVE"') and "fileinto" in line for line in sieve.capabilities)
    sieve.login(address, PASSWORD)
    sieve.put_and_activate("rules", SCRIPT)
    sieve.logout()

    filed = make_message("client@sender.test", [address], "[invoice] March")
    plain = make_message("client@sender.test", [address], "lunch?")
    with stack.smtp() as client:
        assert client.send_message(filed) == {}
        assert client.send_message(plain) == {}
    stack.wait_for_delivery(address, filed["Message-ID"], folder="Archive")
    stack.wait_for_delivery(address, plain["Message-ID"])
    assert filed["Message-ID"] not in stack.inbox(address)
