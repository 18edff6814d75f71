"""`python -m llmharness`: the same as the `llmharness` command."""

from llmharness.cli import main

raise SystemExit(main())
