"""facealign: a TFX pipeline for 68-point face alignment (DAN, AAN)."""
import setuptools

setuptools.setup(
    name="facealign",
    version="0.1.0",
    description="TFX training pipeline for facial landmark detection (DAN, AAN)",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(
        include=["facealign", "facealign.*", "pipeline", "pipeline.*", "components",
                 "components.*", "trainer", "trainer.*", "serving", "serving.*"]),
    # The try-it page `facealign serve` answers at / (serving/page.py)
    package_data={"serving": ["static/*.html"]},
    # Exact pins live in requirements.txt (installed by `make setup`); these are
    # the direct dependencies, so a plain `pip install .` pulls a working set.
    install_requires=[
        "tfx[kfp]==1.21.0",
        "tensorflow==2.21.0",
        "keras==3.15.1",
        "keras-tuner==1.4.8",
        "tensorboard==2.21.0",
        "apache-beam[gcp]==2.77.0",
        "pydantic>=2,<3",
        "pyyaml>=6",
        "numpy>=1.26",
        "pillow>=10",
        "scipy>=1.11",
        "matplotlib>=3.8",
        "opencv-python-headless>=4.8,<5",  # 5.0 dropped CascadeClassifier and the cascades
        "tqdm>=4.66",
    ],
    # Benchmark-only peers, never a runtime dependency: `pip install -e .[peers]` for
    # benchmarks/peer_comparison.py's dlib rows (dlib's prebuilt wheel and its 68-point model).
    # Test-only: Selenium drives Debian's chromium / chromium-driver (`make browser`) for the
    # try-it page's and the run report's browser tests (4.51: 4.52 and later need a certifi
    # newer than the package registry holds).
    # Orchestrator: `facealign compile --target airflow` writes an Airflow DAG file (TFX's
    # AirflowDagRunner); Airflow 2.11 needs rich < 14 (requirements.txt pins it).
    extras_require={"peers": ["dlib-bin==20.0.1.post1", "face_recognition_models==0.3.0"],
                    "browser": ["selenium==4.51.0"],
                    "airflow": ["apache-airflow>=2.11,<3"]},
    entry_points={"console_scripts": ["facealign=facealign.cli:main"]},
)
