"""The `vidindex` command: main.py parses and dispatches, index.py / query.py run the commands,
output.py prints (exit codes, tables, times, JSON), demo.py is the self-contained demo."""
