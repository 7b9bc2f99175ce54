"""The ``fire`` executable: python-fire's module mode (``python -m fire``), which python-fire itself
does not install, so that ``fire router predict image.jpg mask.png`` works as users write it."""
import sys


def main() -> None:
    from fire.__main__ import main as fire_main
    fire_main(sys.argv)


if __name__ == "__main__":
    main()
