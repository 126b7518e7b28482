"""Hydra's configuration tree, shipped inside the package.

Entry points find it as ``pkg://tinytracker.conf`` and tests compose it with
``hydra.initialize_config_module("tinytracker.conf")``, so an installed wheel runs from any
directory. This file makes the folder an importable module for that lookup; it holds no code.
"""
