"""Import-heavy start-up: many standard library packages.

None of these is loaded before the script starts, plain or under either profiler: memray's
`run` imports about 480 modules before the script (asyncio, argparse, decimal, inspect,
typing, ...), and importing one of those again costs nothing, so a workload built on them
would compare different amounts of work.
"""
import email.parser, http.client, xml.dom.minidom, xml.etree.ElementTree, statistics  # noqa
import unittest.mock, sqlite3, tarfile, gzip, pydoc, multiprocessing, smtplib, imaplib  # noqa
import mailbox, configparser, plistlib, xmlrpc.server, http.server  # noqa
import http.cookiejar, wsgiref.simple_server, cProfile, pstats, pdb, doctest, calendar  # noqa
import zoneinfo, shelve, pickletools, optparse, pprint, compileall, modulefinder, pyclbr  # noqa
try:
    import tomllib  # noqa: F401 (3.11+)
except ImportError:
    import netrc  # noqa: F401 (before 3.11, in its place)
print("imported")
