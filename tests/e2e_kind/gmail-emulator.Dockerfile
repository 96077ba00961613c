# syntax=docker/dockerfile:1
# Test-only image: the project's Gmail API emulator, for the kind e2e (tests/e2e_kind). Never
# shipped. The worker image already holds what the emulator imports (aiohttp, python-dateutil,
# from requirements-runtime.lock) but leaves the sandbox package out, so this adds just that.
#
# Built by the test, with the sandbox folder as the (small) build context:
#   docker build -f tests/e2e_kind/gmail-emulator.Dockerfile -t receiptsync-gmail-emulator:e2e sandbox
FROM receiptsync-worker:0.1.0
COPY receiptsync_sandbox /opt/gmail-emulator/receiptsync_sandbox
ENV PYTHONPATH=/opt/gmail-emulator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "receiptsync_sandbox.gmail"]
CMD ["--host", "0.0.0.0", "--port", "8080", "--mailbox-dir", "/mailbox"]
