from interlace_mcp.cli import main

raise SystemExit(main())
