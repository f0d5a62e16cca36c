"""The repository as a user meets it: the CI command, and a manual, not a diary."""

import ast
import importlib.util
import os
import re
import subprocess

import pytest

from conftest import REPO, run_python

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


def _package_modules() -> list[str]:
  """Every module of the package, as dotted names."""
  names = []
  for root, dirs, files in os.walk(os.path.join(REPO, 'rethinking_tf')):
    dirs[:] = sorted(d for d in dirs if d != '__pycache__')
    for name in sorted(files):
      if name.endswith('.py'):
        rel = os.path.relpath(os.path.join(root, name), REPO)[:-3].split(os.sep)
        names.append('.'.join(rel[:-1] if rel[-1] == '__init__' else rel))
  return names


def _python(code: str) -> subprocess.CompletedProcess:
  return run_python('-c', code, timeout=300, check=False)


def _imports(path: str, modules: set[str]) -> set[str]:
  """The modules of `modules` a file imports, at any depth (lazy imports too);
  `from package import submodule` imports the submodule."""
  with open(path) as f:
    tree = ast.parse(f.read())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      subs = {f'{node.module}.{a.name}' for a in node.names} & modules
      found |= subs or {node.module}
  return found & modules


def test_no_import_cycles():
  """The package's import graph (lazy imports included) has no cycle."""
  modules = _package_modules()
  path = lambda m: os.path.join(REPO, *m.split('.')) + ('/__init__.py' if os.path.isdir(
      os.path.join(REPO, *m.split('.'))) else '.py')
  graph = {m: sorted(_imports(path(m), set(modules)) - {m}) for m in modules}
  state, cycles = {}, []

  def visit(m, stack):
    state[m] = 'open'
    for n in graph[m]:
      if state.get(n) == 'open':
        cycles.append(' -> '.join(stack[stack.index(n):] + [n]))
      elif n not in state:
        visit(n, stack + [n])
    state[m] = 'done'

  for m in modules:
    if m not in state:
      visit(m, [m])
  assert 'rethinking_tf.data.pipeline' in graph and not cycles, cycles


# Modules of an optional dependency, imported only when asked for (--peer=pytorch).
_OPTIONAL = {'rethinking_tf.benchmark.peer_pytorch': 'torch'}


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
  modules = [
      m for m in _package_modules()
      if m not in _OPTIONAL or importlib.util.find_spec(_OPTIONAL[m]) is not None
  ]
  proc = _python('import importlib\n'
                 f'for name in {modules!r}:\n'
                 '  importlib.import_module(name)\n')
  assert proc.returncode == 0, proc.stderr


def test_sweep_and_tables_import_no_tensorflow():
  """The sweep runner's contract and the tables need no TensorFlow (nor Keras)."""
  proc = _python('import sys\n'
                 'import rethinking_tf.sweep.flagfiles, rethinking_tf.sweep.runner\n'
                 'import rethinking_tf.results.tables, rethinking_tf.results.figures\n'
                 'print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))')
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == '[]'


def test_tools_import_the_package_not_each_other():
  """A tool imports rethinking_tf, never another tool (nor the tools directory)."""
  tools = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, 'tools')) if f.endswith('.py'))
  hits = []
  for tool in tools:
    with open(os.path.join(REPO, 'tools', tool + '.py')) as f:
      text = f.read()
    hits += [
        f'{tool}: imports {other}' for other in tools
        if re.search(rf'^\s*(from|import) {other}\b', text, re.MULTILINE)
    ]
    if re.search(
        r"sys\.path\.insert\(0, os\.path\.dirname\(os\.path\.abspath\(__file__\)\)\)|"
        r"'tools'\)", text):
      hits.append(f'{tool}: puts the tools directory on sys.path')
  assert not hits, hits


def test_no_package_module_over_400_lines():
  long = []
  for root, _, files in os.walk(os.path.join(REPO, 'rethinking_tf')):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, REPO)
      if name.endswith('.py'):
        with open(path) as f:
          lines = sum(1 for _ in f)
        if lines > 400:
          long.append(f'{rel}: {lines} lines')
  assert not long, long
