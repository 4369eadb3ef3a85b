/* The crucible back ends: type "crucible" (our upstairs, on three
 * downstairs) and "crucible-mem" (crucible's in-memory volume for tests). */
#ifndef BLOCK_CRUCIBLE_UPSTAIRS_H
#define BLOCK_CRUCIBLE_UPSTAIRS_H

struct config_block_dev;
struct block_backend;

/* Activates the region set (waiting up to 30 s for the three
 * downstairs); an error at the config key it concerns, and NULL, if it
 * cannot. */
struct block_backend *block_crucible_open(const struct config_block_dev *cfg);
struct block_backend *block_crucible_mem_open(const struct config_block_dev *cfg);

#endif
