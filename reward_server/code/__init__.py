"""Code-execution rewards (issue 16): run model-written programs against test cases in a sandbox.

Layout: :mod:`.execution` (the types every engine shares), :mod:`.languages` (the language table),
:mod:`.engines` (choosing an engine), :mod:`.sandbox` (the local bubblewrap engine). This package never imports the
server's engine or transport modules.
"""
