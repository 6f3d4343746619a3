"""The mail service's core: settings, domains, mailboxes, the mail store and authentication.

Nothing here imports Qt or opens a listening socket (a test checks it).
"""
