"""Consortium definition and (later) the native Fabric network launcher."""
