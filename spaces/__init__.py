"""The Gradio Space repository (`app.py`, `requirements.txt`, `README.md`): uploaded as it is, so `app.py` imports
nothing from the rest of tango-af. It is a package only so that the tests can import the app."""
