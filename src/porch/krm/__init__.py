"""KRM documents as text that round-trips: YAML trees, package objects, Kptfile edits.

``yaml`` parses and dumps files (byte for byte when untouched), ``comments`` carries comments
between versions of an object, ``resources`` finds objects in a package and heals comments on
update, ``kptfile`` edits a Kptfile and writes a fresh package.
"""
