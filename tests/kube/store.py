"""In-memory object storage with a global resourceVersion counter and a watch-event history."""

import asyncio
import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import kmock

from tests.kube.resources import ResourceSpec


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One change of one object, as streamed to watchers; ``rv`` is its resourceVersion."""

    rv: int
    resource: tuple[str, str, str]
    type: str
    object: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The JSON line of the watch stream."""
        return {"type": self.type, "object": self.object}


class ObjectStore:
    """
    All objects of all resources, each with the kmock history of its versions.

    Every write bumps the global resourceVersion and appends a watch event.
    All methods are synchronous, so each operation is atomic within the event loop.
    """

    def __init__(self) -> None:
        self.objects = kmock.ObjectsArray()
        self.events: list[WatchEvent] = []
        self._rv = 0
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion of the whole store (for list responses)."""
        return str(self._rv)

    @staticmethod
    def _key(spec: ResourceSpec, namespace: str | None, name: str) -> tuple[kmock.resource, str | None, str]:
        return kmock.resource(spec.group, spec.version, spec.plural), namespace, name

    def get(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A deep copy of the live object, or ``None`` if absent or deleted."""
        key = self._key(spec, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list(self, spec: ResourceSpec, namespace: str | None) -> list[dict[str, Any]]:
        """Deep copies of the live objects of a resource, of one namespace or of all (``None``)."""
        wanted = kmock.resource(spec.group, spec.version, spec.plural)
        return [
            copy.deepcopy(obj.raw)
            for (resource, obj_namespace, _), obj in self.objects.items()
            if resource == wanted and not obj.deleted
            if namespace is None or obj_namespace == namespace
        ]

    def save(self, spec: ResourceSpec, obj: dict[str, Any], event_type: str) -> dict[str, Any]:
        """Store a new version of the object with a new resourceVersion; notify the watchers."""
        meta = obj["metadata"]
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = self._key(spec, meta.get("namespace"), meta["name"])
        if key in self.objects:
            self.objects[key].create(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        self._notify(spec, event_type, obj)
        return obj

    def remove(self, spec: ResourceSpec, obj: dict[str, Any]) -> dict[str, Any]:
        """Soft-delete the object (its history remains in ``objects``); notify the watchers."""
        meta = obj["metadata"]
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self.objects[self._key(spec, meta.get("namespace"), meta["name"])].delete()
        self._notify(spec, "DELETED", obj)
        return obj

    def _notify(self, spec: ResourceSpec, event_type: str, obj: dict[str, Any]) -> None:
        self.events.append(WatchEvent(self._rv, spec.key, event_type, copy.deepcopy(obj)))
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def events_after(self, rv: int) -> Iterator[WatchEvent]:
        """The history of events strictly after a resourceVersion."""
        return (event for event in self.events if event.rv > rv)

    async def wait(self, timeout: float) -> bool:
        """Wait for any new event; ``False`` on timeout or when the store is closed."""
        if self._closed:
            return False
        wakeup = self._wakeup
        try:
            await asyncio.wait_for(wakeup.wait(), timeout=max(0.0, timeout))
        except TimeoutError:
            return False
        return not self._closed

    def close(self) -> None:
        """Release all waiting watchers (e.g. before the server shuts down)."""
        self._closed = True
        self._wakeup.set()
