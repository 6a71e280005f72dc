"""Use-cases on mail data (domains, mailboxes, aliases, tokens); no web framework here."""
