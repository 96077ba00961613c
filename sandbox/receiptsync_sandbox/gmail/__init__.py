"""Gmail API emulator for the sandbox: mailboxes from .eml folders, served to the real Google client.

Run it with ``python -m receiptsync_sandbox.gmail --port P --mailbox-dir MDIR`` or in-process with
:func:`receiptsync_sandbox.gmail.server.create_app`. Sample mailboxes: ``receiptsync_sandbox.gmail.samples``.
"""
