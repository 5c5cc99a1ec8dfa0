"""The bundled sample pairs, installed as package data: ``changedet.sample_tiles``.

This folder stays at the repository's top level; ``pyproject.toml`` maps it into the
package so that wheels carry the tiles and :mod:`changedet.data` finds them through
:mod:`importlib.resources`.  See ``README.md`` here for what the pairs are.
"""
