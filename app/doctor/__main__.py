from app.doctor import main

raise SystemExit(main())
