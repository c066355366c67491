; speed_precision.lisp -- the "Memory and speed" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; On a machine without a CUDA GPU, asking for "cuda" is an error (it says so and suggests "cpu"), so
; the GPU line runs inside a check. float16 halves the model's memory; on a CPU, float32 is usually
; faster. Greedy text is nearly always the same in both precisions.

(use 'lispe_torch)

; [added] what the block assumes: a model (tiny random transformer) and a prompt
(setq model (torch_model_create "transformer" {"vocab_size":49152 "hidden_size":128 "seed":1}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq input_tokens (tokenizer_encode "Speed matters because"))
(setq generator (torch_generator_create model "cpu"))
(torch_set_generation_params generator 20 nil nil nil)
(setq out32 (torch_generate generator input_tokens "greedy"))
(println "float32:" (torch_model_info model))

; [added] the GPU line runs only where a GPU exists
(if (torch_cuda_is_available)
    (block
; Prefer GPU for large models
(setq generator (torch_generator_create model "cuda"))
        (println "Using the GPU:" generator))
    (println "No CUDA GPU here:" (catch (torch_generator_create model "cuda"))))

; Use appropriate precision
(setq model (torch_model_to_dtype model "float16"))  ; Half precision

; [added] generate again in half precision and compare
(torch_set_generation_params generator 20 nil nil nil)
(setq out16 (torch_generate generator input_tokens "greedy"))
(println "float16:" (@ (torch_model_info model) "dtype") "on" (@ (torch_model_info model) "device"))
(println "float32 text:" (tokenizer_decode out32))
(println "float16 text:" (tokenizer_decode (tensor_to_list out16)))
(println "Same tokens:" (= (tensor_to_list out32) (tensor_to_list out16)))
