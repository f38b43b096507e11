"""Plumbing shared by every tool: input access and validation, randomness, devices, slot writing."""
