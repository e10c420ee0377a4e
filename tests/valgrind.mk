# `make valgrind`: the small-model path (story-llama tokenizer, weights,
# scorer; data readers, safetensors; training a tiny model, checkpoints, eval
# metrics) built without sanitizers (-O1 -g, no
# -march=native so valgrind knows every instruction) and run under
# valgrind --leak-check=full --error-exitcode=1. Single-threaded (OpenMP and
# OpenBLAS thread pools would show up as "possibly lost" thread stacks).
VALGRIND_TESTS ?= test_safetensors test_tokenizer test_tokenizer_vectors test_chat_prompt test_model_story \
                  test_scorer test_data_layouts test_fuzz_regressions test_train_accum test_train_checkpoint \
                  test_eval
VALGRIND_FLAGS := -O1 -g
# Its own library objects (without them the archive was empty and no test
# linked); this file is a prerequisite too, so that an empty archive left by
# that bug is rebuilt rather than taken as up to date.
VALGRIND_LIB_OBJ := $(patsubst %.c,build/valgrind/obj/%.o,$(LIB_SRC))
$(eval $(call variant,valgrind,$(VALGRIND_FLAGS),$(VALGRIND_LIB_OBJ) tests/valgrind.mk))

valgrind: $(addprefix build/valgrind/tests/,$(VALGRIND_TESTS))
	tests/valgrind.sh $(VALGRIND_TESTS)

.PHONY: valgrind
