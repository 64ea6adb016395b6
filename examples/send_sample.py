"""Send a signed sample delivery to a running app, as OpenAI would.

.. code-block:: text

    python examples/send_sample.py batch.completed
    python examples/send_sample.py response.completed --url http://127.0.0.1:5000/webhooks/openai

The secret is read from ``OPENAI_WEBHOOK_SECRET``, or the example app's demo
secret when unset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from flask_openai_webhooks.testing import make_event
from flask_openai_webhooks.testing import signed_headers

DEMO_SECRET = "whsec_ZGVtby1zZWNyZXQtZG8tbm90LXVzZS1pbi1wcm9kdWN0aW9uIQ=="
DEFAULT_URL = "http://127.0.0.1:5000/webhooks/openai"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("event_type", nargs="?", default="batch.completed")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args(argv)

    secret = os.environ.get("OPENAI_WEBHOOK_SECRET", DEMO_SECRET)
    body = json.dumps(make_event(args.event_type)).encode()
    headers = {"Content-Type": "application/json", **signed_headers(body, secret)}
    request = urllib.request.Request(args.url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except urllib.error.URLError as e:
        print(f"could not reach {args.url}: {e.reason}", file=sys.stderr)
        return 2
    print(f"{args.event_type} -> {status} {text}")
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
