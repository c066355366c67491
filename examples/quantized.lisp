; quantized.lisp -- SmolLM2-135M-Instruct with weight-only int8 and int4 weights.
; model: smollm2
;
; "quantize" at load time keeps the GGUF file's blocks as they are: int4 holds its Q4_1 blocks, and
; int8 (groups of 32 weights with a scale and an offset, where the native AVX2 kernels run) holds its
; Q4_1 and Q8_0 blocks. Both multiply by the same weights as the float32 model, so their greedy
; answers follow it, at 2-3x its speed (docs/performance.md). A group size of -1 gives int8 one scale
; per output channel instead (torch's int8 layout), which re-rounds those weights: its answer here
; leaves float32's at the first token.

(use 'lispe_torch)

(setq reference (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq prompt (tokenizer_chat '(("user" "Explain photosynthesis to a ten-year-old."))))
(setq greedy {"max_length":24 "strategy":"greedy"})
(setq expected (torch_generate_text (torch_generator_create reference "cpu") prompt greedy))
(println "float32:" expected)

(defun answer (label config)
   (setq model (torch_hf_load_model "SmolLM2-135M-Instruct" config))
   (setq info (torch_model_info model))
   (setq text (torch_generate_text (torch_generator_create model "cpu") prompt greedy))
   (println label "->" text)
   (println "  group size" (@ info "quantization_group_size") "| kernels" (@ info "quantized_kernels")
            "| same text as float32:" (= text expected)))

(answer "int8" {"quantize":"int8"})
(answer "int4" {"quantize":"int4"})
(answer "int8 per channel" {"quantize":"int8" "group_size":-1})
