"""Read-only views of a store for people: status tables, event exports, the live watch, the HTML report.

Nothing here writes a store or talks to an exchange; heavy libraries (matplotlib,
rich's live display) are imported only by the module that draws with them.
"""
