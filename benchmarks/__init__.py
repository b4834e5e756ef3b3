"""Side-by-side benchmarks: truststore-auto vs bare certifi, the public
truststore and pip-system-certs.  Run ``python -m benchmarks [--quick]``
from the repository root; see ``benchmarks/README.md``."""
