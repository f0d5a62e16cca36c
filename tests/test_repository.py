"""The repository as a user meets it: the CI command, and a manual, not a diary."""

import os
import re

from conftest import REPO

# Run outputs (CSV/JSON/events) are data, not prose.
_DATA_DIRS = (os.path.join('docs', 'results'),)
_TEXT_ENDINGS = ('.py', '.md', '.cfg', '.toml', '.txt', '.sh', '')


def _text_files():
  for root, dirs, files in os.walk(REPO):
    rel = os.path.relpath(root, REPO)
    dirs[:] = [
        d for d in dirs
        if not d.startswith('.') and d not in ('__pycache__',
                                               'build') and not d.endswith('.egg-info')
    ]
    if any(rel == d or rel.startswith(d + os.sep) for d in _DATA_DIRS):
      dirs[:] = []
      files = [f for f in files if f.endswith('.md')]
    for name in files:
      if os.path.splitext(name)[1] in _TEXT_ENDINGS:
        yield os.path.join(root, name)
  yield os.path.join(REPO, '.ci', 'run')


def test_ci_runs_exactly_the_readme_test_command():
  with open(os.path.join(REPO, '.ci', 'run')) as f:
    command = [l for l in f.read().splitlines() if l and not l.startswith(('#', 'set ', 'cd '))]
  with open(os.path.join(REPO, 'README.md')) as f:
    readme = f.read()
  assert len(command) == 1 and f'    {command[0]}\n' in readme, command


def test_no_development_history_in_code_or_docs():
  pattern = re.compile(r'\b(session|issue|round)s?[ -]?[0-9]+', re.IGNORECASE)
  hits = []
  for path in _text_files():
    with open(path, errors='replace') as f:
      for number, line in enumerate(f, 1):
        if pattern.search(line):
          hits.append(f'{os.path.relpath(path, REPO)}:{number}: {line.strip()[:80]}')
  assert not hits, '\n'.join(hits)


def test_docs_hold_no_placeholders():
  """Every number in the manual was measured: no to-be-filled markers."""
  marker = re.compile(r'@@[A-Z]+')
  hits = [
      f'{os.path.relpath(p, REPO)}: {m.group()}' for p in _text_files() if p.endswith('.md')
      for m in marker.finditer(open(p, errors='replace').read())
  ]
  assert not hits, hits
