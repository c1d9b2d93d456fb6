"""The monitor's query layer: plain functions from (connection, filter, viewer) to JSON-ready dicts.

Every function returns only builtin types (dict, list, str, int, float, None), so one result
serves both the HTML template and the JSON twin, and the JSON keys are what the tests pin down.
"""
