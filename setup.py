"""Packaging hook: install the top-level ``cli.py`` as the module ``evalkit.cli``.

Everything else is declared in pyproject.toml (``package-dir`` maps ``evalkit.methods``
→ ``methods/`` and so on); setuptools has no declarative way to move one top-level module
into a package, so ``build_py`` adds it to the ``evalkit`` package's modules.
"""

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "evalkit":
            modules.append(("evalkit", "cli", "cli.py"))
        return modules


setup(cmdclass={"build_py": BuildPy})
