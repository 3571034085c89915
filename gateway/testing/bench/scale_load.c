/*
 * scale_load: N iSCSI sessions (libiscsi), each addressing every LUN it sees, driving
 * random I/O at a fixed depth per session; prints one JSON object.
 *
 * Why not fio: fio's libiscsi engine opens one session per file (LUN) per job, so
 * 16 jobs x 64 LUNs would be 1024 single-LUN sessions, not 16 sessions of 64 LUNs as a
 * real initiator (open-iscsi, ESXi) holds them.  Here one libiscsi context is one session
 * and commands carry the LUN, as on the wire.
 *
 *   scale_load PORTAL TARGET INITIATOR_PREFIX SESSIONS DEPTH BS REGION_BYTES RUNTIME RAMP RW
 *
 * Session i logs in as INITIATOR_PREFIX-<i>; REPORT LUNS gives its LUNs; every LUN gets
 * TEST UNIT READY until GOOD (the nexus's unit attention) and READ CAPACITY(16); then I/O
 * of BS bytes at random aligned offsets below REGION_BYTES on a random LUN (RW = read or
 * write).  Completions in [RAMP, RAMP + RUNTIME) count; latency in 10 us buckets.
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 256
#define MAX_LUNS 1024
#define BUCKET_NS 10000ULL
#define NBUCKETS 100000 /* 1 s */

struct session {
	struct iscsi_context *ctx;
	int luns[MAX_LUNS];
	int nluns;
	int block_size;
	int inflight;
	int dead;
};

struct io {
	struct session *s;
	int lun;
	uint64_t start_ns;
};

static uint64_t buckets[NBUCKETS + 1];
static uint64_t per_lun[MAX_LUNS];
static uint64_t ios, bytes_done, errors, lat_sum_ns;
static uint64_t t_measure, t_end;
static int writing, stopping;
static uint32_t bs;
static uint64_t region;
static unsigned char *wbuf;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int submit(struct session *s);

static void done(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	struct io *io = priv;
	struct session *s = io->s;
	uint64_t t = now_ns();
	(void)ctx;
	s->inflight--;
	if (status != SCSI_STATUS_GOOD) {
		errors++;
	} else if (t >= t_measure && t < t_end && io->start_ns >= t_measure) {
		uint64_t lat = t - io->start_ns, b = lat / BUCKET_NS;
		buckets[b < NBUCKETS ? b : NBUCKETS]++;
		lat_sum_ns += lat;
		ios++;
		bytes_done += bs;
		per_lun[io->lun]++;
	}
	if (data)
		scsi_free_scsi_task(data);
	free(io);
	if (!stopping && t < t_end)
		submit(s);
}

static int submit(struct session *s)
{
	struct io *io = malloc(sizeof(*io));
	uint64_t blocks = region / s->block_size, per_io = bs / s->block_size;
	uint64_t lba = ((uint64_t)random() % (blocks / per_io)) * per_io;
	struct scsi_task *task;
	io->s = s;
	io->lun = s->luns[random() % s->nluns];
	io->start_ns = now_ns();
	if (writing)
		task = iscsi_write16_task(s->ctx, io->lun, lba, wbuf, bs, s->block_size, 0, 0, 0, 0, 0, done, io);
	else
		task = iscsi_read16_task(s->ctx, io->lun, lba, bs, s->block_size, 0, 0, 0, 0, 0, done, io);
	if (task == NULL) {
		free(io);
		errors++;
		return -1;
	}
	s->inflight++;
	return 0;
}

static int prepare_lun(struct session *s, int lun)
{
	struct scsi_task *t;
	struct scsi_readcapacity16 *rc;
	int tries, ok = 0;
	for (tries = 0; tries < 4 && !ok; tries++) {
		t = iscsi_testunitready_sync(s->ctx, lun);
		ok = t != NULL && t->status == SCSI_STATUS_GOOD;
		if (t)
			scsi_free_scsi_task(t);
	}
	if (!ok)
		return -1;
	t = iscsi_readcapacity16_sync(s->ctx, lun);
	if (t == NULL || t->status != SCSI_STATUS_GOOD || (rc = scsi_datain_unmarshall(t)) == NULL) {
		if (t)
			scsi_free_scsi_task(t);
		return -1;
	}
	s->block_size = rc->block_length;
	if ((rc->returned_lba + 1) * (uint64_t)rc->block_length < region)
		region = (rc->returned_lba + 1) * (uint64_t)rc->block_length;
	scsi_free_scsi_task(t);
	return 0;
}

static int login(struct session *s, const char *portal, const char *target, const char *ini)
{
	struct scsi_task *t;
	struct scsi_reportluns_list *list;
	uint32_t i;
	s->ctx = iscsi_create_context(ini);
	if (s->ctx == NULL)
		return -1;
	iscsi_set_targetname(s->ctx, target);
	iscsi_set_session_type(s->ctx, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(s->ctx, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(s->ctx, portal, 0) != 0) {
		fprintf(stderr, "%s: login failed: %s\n", ini, iscsi_get_error(s->ctx));
		return -1;
	}
	t = iscsi_reportluns_sync(s->ctx, 0, 16 + 8 * MAX_LUNS);
	if (t == NULL || t->status != SCSI_STATUS_GOOD || (list = scsi_datain_unmarshall(t)) == NULL) {
		fprintf(stderr, "%s: REPORT LUNS failed: %s\n", ini, iscsi_get_error(s->ctx));
		return -1;
	}
	for (i = 0; i < list->num && s->nluns < MAX_LUNS; i++)
		if (list->luns[i] < MAX_LUNS)
			s->luns[s->nluns++] = list->luns[i];
	scsi_free_scsi_task(t);
	for (i = 0; i < (uint32_t)s->nluns; i++)
		if (prepare_lun(s, s->luns[i]) != 0) {
			fprintf(stderr, "%s: LUN %d not ready: %s\n", ini, s->luns[i], iscsi_get_error(s->ctx));
			return -1;
		}
	return s->nluns > 0 ? 0 : -1;
}

static double percentile(double q)
{
	uint64_t want = (uint64_t)(q * ios + 0.999999), seen = 0;
	int b;
	if (want == 0)
		want = 1;
	for (b = 0; b <= NBUCKETS && ios; b++) {
		seen += buckets[b];
		if (seen >= want)
			return (b + 0.5) * BUCKET_NS / 1000.0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct session sessions[MAX_SESSIONS];
	struct pollfd pfds[MAX_SESSIONS];
	char name[512];
	int n, depth, i, j, up = 0, out = 0, dropped = 0, luns_min = MAX_LUNS, luns_max = 0, touched = 0;
	double runtime, ramp, seconds;
	uint64_t t0, drain_until;
	struct rusage ru;

	if (argc != 11) {
		fprintf(stderr, "usage: scale_load PORTAL TARGET INITIATOR_PREFIX SESSIONS DEPTH BS "
			"REGION_BYTES RUNTIME RAMP read|write\n");
		return 2;
	}
	n = atoi(argv[4]);
	depth = atoi(argv[5]);
	bs = strtoul(argv[6], NULL, 0);
	region = strtoull(argv[7], NULL, 0);
	runtime = atof(argv[8]);
	ramp = atof(argv[9]);
	writing = strcmp(argv[10], "write") == 0;
	if (n < 1 || n > MAX_SESSIONS || depth < 1 || bs < 512)
		return 2;
	wbuf = malloc(bs);
	memset(wbuf, 0xa5, bs);
	srandom(getpid());
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s-%02d", argv[3], i);
		if (login(&sessions[i], argv[1], argv[2], name) != 0)
			sessions[i].dead = 1;
		else
			up++;
		if (sessions[i].nluns < luns_min)
			luns_min = sessions[i].nluns;
		if (sessions[i].nluns > luns_max)
			luns_max = sessions[i].nluns;
	}
	t0 = now_ns();
	t_measure = t0 + (uint64_t)(ramp * 1e9);
	t_end = t_measure + (uint64_t)(runtime * 1e9);
	drain_until = t_end + 30ULL * 1000000000ULL;
	for (i = 0; i < n; i++)
		for (j = 0; j < depth && !sessions[i].dead; j++)
			submit(&sessions[i]);
	for (;;) {
		int busy = 0;
		uint64_t t = now_ns();
		if (t >= t_end)
			stopping = 1;
		for (i = 0; i < n; i++) {
			pfds[i].fd = sessions[i].dead ? -1 : iscsi_get_fd(sessions[i].ctx);
			pfds[i].events = sessions[i].dead ? 0 : iscsi_which_events(sessions[i].ctx);
			pfds[i].revents = 0;
			busy += sessions[i].dead ? 0 : sessions[i].inflight;
		}
		if ((stopping && busy == 0) || t > drain_until)
			break;
		if (poll(pfds, n, 100) < 0)
			break;
		for (i = 0; i < n; i++)
			if (!sessions[i].dead && iscsi_service(sessions[i].ctx, pfds[i].revents) < 0) {
				fprintf(stderr, "session %d: %s\n", i, iscsi_get_error(sessions[i].ctx));
				sessions[i].dead = 1;
				dropped++;
			}
	}
	seconds = runtime;
	for (i = 0; i < n; i++) {
		if (!sessions[i].dead && iscsi_logout_sync(sessions[i].ctx) == 0)
			out++;
		if (sessions[i].ctx)
			iscsi_destroy_context(sessions[i].ctx);
	}
	for (i = 0; i < MAX_LUNS; i++)
		touched += per_lun[i] > 0;
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"sessions\": %d, \"sessions_established\": %d, \"sessions_dropped\": %d, "
	       "\"sessions_logged_out\": %d, \"luns_per_session_min\": %d, \"luns_per_session_max\": %d, "
	       "\"luns_touched\": %d, \"ios\": %llu, \"errors\": %llu, \"seconds\": %.3f, "
	       "\"iops\": %.1f, \"mbps\": %.3f, \"lat_mean_us\": %.1f, \"lat_p50_us\": %.1f, "
	       "\"lat_p99_us\": %.1f, \"lat_max_bucket_us\": %.1f, \"depth_per_session\": %d, "
	       "\"bs\": %u, \"region_bytes\": %llu, \"rw\": \"%s\", \"driver_cpu_s\": %.3f}\n",
	       n, up, dropped, out, up ? luns_min : 0, luns_max, touched, (unsigned long long)ios,
	       (unsigned long long)errors, seconds, ios / seconds, bytes_done / seconds / 1e6,
	       ios ? lat_sum_ns / (double)ios / 1000.0 : 0, percentile(0.50), percentile(0.99),
	       percentile(1.0), depth, bs, (unsigned long long)region, writing ? "write" : "read",
	       ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	return up == n ? 0 : 1;
}
