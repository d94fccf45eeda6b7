"""Import-heavy start-up: many standard library packages."""
import asyncio, email.parser, http.client, xml.dom.minidom, decimal, fractions, statistics  # noqa
import logging.handlers, unittest.mock, argparse, csv, sqlite3, tarfile, zipfile, difflib  # noqa
import pydoc, inspect, dataclasses, typing, concurrent.futures, multiprocessing  # noqa
print("imported")
