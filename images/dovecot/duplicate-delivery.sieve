# Part of the Dovecot image (compiled at start). Runs first for every mailbox
# (plugin setting sieve_before; the spam-to-Junk script is sieve_before2).
#
# SMTP delivers at least once, not exactly once: when Postfix loses Dovecot's reply
# after the message was stored (Postfix restarted or killed mid-delivery, the
# connection cut), or a sending server loses Postfix's 250 after DATA, the message
# comes again and would be stored twice. A copy is a duplicate when it has the same
# Message-ID and the same envelope sender as one stored for this mailbox within the
# last day; it is discarded (Dovecot logs the discard with its msgid).
# The sender is part of the key so that a mailing list's copy (envelope sender
# <list>-bounces@) is kept next to the copy sent to the member directly, and a message
# without a Message-ID is never treated as a duplicate.
require ["duplicate", "variables", "envelope"];

set "message_id" "";
set "sender" "";
if header :matches "Message-ID" "*" {
  set "message_id" "${1}";
}
if envelope :all :matches "from" "*" {
  set "sender" "${1}";
}
if not string :is "${message_id}" "" {
  if duplicate :seconds 86400 :uniqueid "${message_id} ${sender}" {
    discard;
    stop;
  }
}
