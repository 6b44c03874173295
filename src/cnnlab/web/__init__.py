"""The draw-a-digit web app (`cnnlab serve`): `create_app(run_dir)` in `cnnlab.web.app`."""
