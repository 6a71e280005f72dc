# Part of the Dovecot image (compiled at start). Runs before each user's own Sieve script
# for domains whose filter policy files spam into Junk (domain_filter_policies.spam_to_junk;
# the SQL userdb names this file as sieve_before).
# Amavis removes X-Spam-* headers that arrive from outside and adds its own, so this
# header is Amavis's verdict (at or above the domain's spam tag score).
require ["fileinto", "mailbox"];
if header :is "X-Spam-Flag" "YES" {
  fileinto :create "Junk";
}
