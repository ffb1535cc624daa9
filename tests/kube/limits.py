"""
The size limits a real kube-apiserver (and the etcd behind it) enforces, with its exact responses.

- Request bodies: ``k8s.io/apiserver/pkg/endpoints/handlers/rest.go`` ``limitedReadBody`` reads at
  most ``MaxRequestBodyBytes`` (3 MiB, the server's default) and answers
  ``errors.NewRequestEntityTooLargeError("limit is 3145728")``: 413, reason ``RequestEntityTooLarge``,
  message ``Request entity too large: limit is 3145728``.
- Annotations: ``k8s.io/apimachinery/pkg/api/validation/objectmeta.go`` ``ValidateAnnotations``
  sums the lengths of all keys and values; over ``TotalAnnotationSizeLimitB`` (256 KiB) it is
  ``field.TooLong(metadata.annotations, "", 262144)``: 422 Invalid,
  ``metadata.annotations: Too long: must have at most 262144 bytes``.
- Stored objects: etcd refuses a request over its ``--max-request-bytes`` (1.5 MiB by default) with
  ``etcdserver: request is too large``. kube-apiserver passes that error on unconverted, so
  ``responsewriters.ErrorToAPIStatus`` renders it as a 500 Status with an empty reason and the etcd
  text as the message; kubectl prints ``Error from server: etcdserver: request is too large``.
  (This is the behaviour of the released servers up to at least v1.32, which is what the emulator's
  ``/version`` reports.) Custom resources are stored as JSON, so the compact JSON is what counts.
"""

import json
from collections.abc import Mapping
from typing import Any

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
MAX_STORED_OBJECT_BYTES = 1536 * 1024  # etcd's default --max-request-bytes: 1,572,864

REQUEST_TOO_LARGE_MESSAGE = f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}"
ANNOTATIONS_TOO_LONG_MESSAGE = f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"
ETCD_TOO_LARGE_MESSAGE = "etcdserver: request is too large"


def annotations_size(obj: Mapping[str, Any]) -> int:
    """The total size of ``metadata.annotations`` as the API server counts it: UTF-8 bytes of keys + values."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return sum(len(key.encode()) + len(str(value).encode()) for key, value in annotations.items())


def stored_size(obj: Mapping[str, Any]) -> int:
    """
    The bytes of the object as stored in etcd: compact JSON (as for custom resources), without the
    resourceVersion, which ``PrepareObjectForStorage`` clears (etcd's revision is the version).
    """
    meta = {key: value for key, value in (obj.get("metadata") or {}).items() if key != "resourceVersion"}
    return len(json.dumps({**obj, "metadata": meta}, separators=(",", ":"), ensure_ascii=False).encode())
