"""Parsing of Kubernetes API URL paths into their semantic parts."""

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A parsed Kubernetes API path: ``/apis/G/V/namespaces/NS/PLURAL/NAME/SUB``."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """Parse a resource path; ``None`` if it is not under ``/api/v1`` or ``/apis/G/V``."""
    parts = [part for part in re.split(r"/+", path) if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None

    # Namespaced paths, except for the namespaces themselves: /api/v1/namespaces[/NAME[/status]].
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural, name, subresource = (rest + [None, None, None])[:3]
    return ApiPath(
        group=group, version=version, plural=plural, namespace=namespace, name=name, subresource=subresource
    )
