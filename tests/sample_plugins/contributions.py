"""Contributions from a plain object (not a module), with a duplicate-name twin."""

from dataclasses import dataclass

from kcore import hookimpl


@dataclass
class Named:
    name: str
    type_name: str = ""


class Contributor:
    def __init__(self, *names):
        self.names = names

    @hookimpl
    def kcore_controllers(self, settings):
        return [Named(n) for n in self.names]

    @hookimpl
    def kcore_volume_sources(self):  # fewer arguments than the spec: allowed
        return [Named(n, type_name=n) for n in self.names]
