"""ManageSieve on 4190 and Sieve filtering at LMTP delivery."""

from __future__ import annotations

from collections import Counter

from conftest import PASSWORD, Stack
from mailtools import ManageSieve, imap_messages, make_message, wait_for

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


def test_a_message_sent_again_after_a_lost_reply_is_stored_once(stack: Stack) -> None:
    """A sender that lost the 250 after DATA sends the same message again (same
    Message-ID, same envelope sender): the mailbox keeps one copy. The same Message-ID
    from another envelope sender (a list's copy) and messages without a Message-ID are
    all kept."""
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "ida")
    resent = make_message("shop@sender.test", [address], "order confirmation")
    list_copy = make_message("shop@sender.test", [address], "order confirmation via list")
    del list_copy["Message-ID"]
    list_copy["Message-ID"] = resent["Message-ID"]
    anonymous = make_message("shop@sender.test", [address], "no message-id")
    del anonymous["Message-ID"]
    last = make_message("shop@sender.test", [address], "last one")
    with stack.smtp() as client:
        for _ in range(3):
            assert client.send_message(resent) == {}
        assert client.send_message(list_copy, from_addr="news-bounces@lists.sender.test") == {}
        for _ in range(2):
            assert client.send_message(anonymous) == {}
        assert client.send_message(last) == {}
    stack.wait_for_delivery(address, last["Message-ID"])

    def settled() -> Counter[str] | None:
        if stack.exec("postfix", "postqueue", "-j").stdout.strip():
            return None
        messages = imap_messages(stack.host, stack.ports["imaps"], address, PASSWORD)
        return Counter(str(message["Subject"]) for message in messages)

    subjects = wait_for("an empty queue", settled, timeout=60)
    assert subjects == Counter(
        {
            "order confirmation": 1,
            "order confirmation via list": 1,
            "no message-id": 2,
            "last one": 1,
        }
    ), subjects
