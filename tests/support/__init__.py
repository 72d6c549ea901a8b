"""Helpers the test modules share: real lab configurations built through the config schema
(:mod:`tests.support.labs`), never stand-in objects."""
