import subprocess
import sys


def test_the_light_modules_import_neither_torch_nor_faiss_nor_numpy():
    code = (
        "import sys, retrieval, retrieval.settings, retrieval.models, retrieval.errors, retrieval.hits, "
        "retrieval.uploads, retrieval.chunking\n"
        "from retrieval.settings import RetrievalSettings\n"
        "RetrievalSettings()\n"
        "heavy = {'torch', 'faiss', 'sentence_transformers', 'transformers', 'numpy', 'gateway', 'trainer'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
